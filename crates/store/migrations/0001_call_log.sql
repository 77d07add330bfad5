-- The call log. One schema for SQLite and PostgreSQL (through sqlx's `Any` driver), so it uses only
-- types both understand: TEXT, BIGINT. Times are milliseconds since the Unix epoch (UTC), booleans
-- are 0/1, ids are UUIDv7 strings made by the application. Enum values (direction, status,
-- speaker) are TEXT in the API's snake_case spelling and are checked when read, so adding one needs
-- no migration.

CREATE TABLE calls (
    id               TEXT   NOT NULL PRIMARY KEY,
    provider_call_id TEXT   NOT NULL,
    direction        TEXT   NOT NULL,
    from_number      TEXT   NOT NULL,
    to_number        TEXT   NOT NULL,
    flow             TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    started_at       BIGINT NOT NULL,
    answered_at      BIGINT,
    ended_at         BIGINT,
    duration_ms      BIGINT,
    outcome          TEXT,
    -- The flow's slot values, a JSON object.
    slots            TEXT   NOT NULL DEFAULT '{}',
    hangup_reason    TEXT,
    transferred_to   TEXT,
    recording_path   TEXT
);

-- The call list pages newest first by (started_at, id); retention and stats range over started_at.
CREATE INDEX calls_newest ON calls (started_at DESC, id DESC);
-- Provider status callbacks find their call by the provider's id.
CREATE INDEX calls_provider_call_id ON calls (provider_call_id);
-- Start-up closes the calls a crash left open.
CREATE INDEX calls_status ON calls (status);

CREATE TABLE turns (
    call_id             TEXT   NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq                 BIGINT NOT NULL,
    speaker             TEXT   NOT NULL,
    text                TEXT   NOT NULL,
    at_ms               BIGINT NOT NULL,
    interrupted         BIGINT NOT NULL DEFAULT 0,
    -- Stage timings, all NULL when the turn has none.
    speech_end_ms       BIGINT,
    turn_end_ms         BIGINT,
    transcript_ready_ms BIGINT,
    first_token_ms      BIGINT,
    first_audio_ms      BIGINT,
    -- Derived from the timings, stored so latency statistics need no arithmetic in SQL.
    voice_to_voice_ms   BIGINT,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE events (
    call_id TEXT   NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    detail  TEXT,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE api_keys (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    -- SHA-256 of the secret, lowercase hex; the secret itself is never stored.
    secret_hash  TEXT   NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
