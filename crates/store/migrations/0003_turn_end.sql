-- When a turn ended: the caller's last word, or the last audio of a bot line that was played.
ALTER TABLE turns ADD COLUMN end_ms BIGINT;
