-- Which runtime handles a call, and when that runtime last said the call is alive. Several runtimes
-- can share one PostgreSQL: start-up closes only the calls of its own runtime name that a crash
-- left open, and any runtime closes calls whose runtime stopped answering for them (a runtime that
-- never came back, or came back under another name). Rows from before have runtime ''.
ALTER TABLE calls ADD COLUMN runtime TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN alive_at BIGINT;
