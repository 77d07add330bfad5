-- Outbound campaigns. Same conventions as the call log: TEXT, BIGINT and DOUBLE PRECISION only,
-- times in milliseconds since the Unix epoch (UTC), booleans 0/1, ids (UUIDv7) made by the
-- application, enum values as snake_case TEXT checked when read.

CREATE TABLE campaigns (
    id                       TEXT             NOT NULL PRIMARY KEY,
    name                     TEXT             NOT NULL,
    flow                     TEXT             NOT NULL,
    caller_id                TEXT             NOT NULL,
    -- draft | running | paused | cancelled | completed
    status                   TEXT             NOT NULL,
    -- The calling window in the contact's local time, minutes since local midnight: start
    -- inclusive, end exclusive, both within 08:00-21:00 (480..=1260).
    window_start             BIGINT           NOT NULL,
    window_end               BIGINT           NOT NULL,
    -- Bit 0 = Monday ... bit 6 = Sunday.
    days_of_week             BIGINT           NOT NULL,
    -- YYYY-MM-DD in the contact's local time, both inclusive; NULL = open.
    start_date               TEXT,
    end_date                 TEXT,
    max_attempts             BIGINT           NOT NULL,
    max_attempts_per_day     BIGINT           NOT NULL,
    -- Minutes to wait before the next attempt, by the result of the last one.
    retry_busy_minutes       BIGINT           NOT NULL,
    retry_no_answer_minutes  BIGINT           NOT NULL,
    retry_voicemail_minutes  BIGINT           NOT NULL,
    retry_failed_minutes     BIGINT           NOT NULL,
    max_concurrent           BIGINT           NOT NULL,
    calls_per_second         DOUBLE PRECISION NOT NULL,
    -- leave_message | hang_up
    voicemail_action         TEXT             NOT NULL,
    created_at               BIGINT           NOT NULL
);

CREATE TABLE contacts (
    id              TEXT   NOT NULL PRIMARY KEY,
    campaign_id     TEXT   NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    name            TEXT   NOT NULL,
    -- E.164.
    phone           TEXT   NOT NULL,
    -- IANA name; NULL = unknown, and a contact whose local time is unknown is never called.
    time_zone       TEXT,
    consent         BIGINT NOT NULL,
    consent_source  TEXT,
    -- Custom fields for the flow, a JSON object of strings.
    fields          TEXT   NOT NULL DEFAULT '{}',
    -- pending | in_progress | done
    state           TEXT   NOT NULL,
    final_outcome   TEXT,
    -- The number of attempt rows (a skipped claim deletes its row and gives its number back).
    attempts        BIGINT NOT NULL DEFAULT 0,
    -- NULL = due now.
    next_attempt_at BIGINT,
    created_at      BIGINT NOT NULL,
    UNIQUE (campaign_id, phone)
);

-- Claiming looks for the due pending contacts of one campaign.
CREATE INDEX contacts_due ON contacts (campaign_id, state, next_attempt_at);

CREATE TABLE attempts (
    id               TEXT   NOT NULL PRIMARY KEY,
    contact_id       TEXT   NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id      TEXT   NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    -- 1-based. The uniqueness makes a second claim of the same attempt impossible, whatever
    -- the code above it does.
    number           BIGINT NOT NULL,
    -- claimed | dialing | ringing | answered | completed | busy | no_answer | voicemail | failed
    -- | in_doubt
    status           TEXT   NOT NULL,
    claimed_at       BIGINT NOT NULL,
    -- When the attempt was marked dialing, just before the provider was asked to place the call.
    dialed_at        BIGINT,
    provider_call_id TEXT,
    -- The call log's id of the call, once it has one.
    call_id          TEXT,
    outcome          TEXT,
    -- The flow's slot values, a JSON object.
    slots            TEXT   NOT NULL DEFAULT '{}',
    ended_at         BIGINT,
    UNIQUE (contact_id, number)
);

-- Status callbacks find their attempt by the provider's id.
CREATE INDEX attempts_provider_call_id ON attempts (provider_call_id);
-- Concurrency counts and the search for in-doubt attempts.
CREATE INDEX attempts_campaign_status ON attempts (campaign_id, status);

-- The do-not-call list, shared by every campaign.
CREATE TABLE dnc (
    phone    TEXT   NOT NULL PRIMARY KEY,
    reason   TEXT,
    source   TEXT,
    added_at BIGINT NOT NULL
);

-- Every decision the scheduler took before a dial, with the check that decided it: the audit trail
-- of why someone was or was not called.
CREATE TABLE scheduler_decisions (
    id          TEXT   NOT NULL PRIMARY KEY,
    campaign_id TEXT   NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id  TEXT   NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    -- dial | skip
    decision    TEXT   NOT NULL,
    -- The check that decided (`window`, `consent`, `dnc`, ...; `all_checks_passed` for a dial).
    reason      TEXT   NOT NULL,
    -- What the check saw, for people.
    detail      TEXT   NOT NULL,
    -- For a skip: when the contact is due again (NULL = unchanged or never).
    retry_at    BIGINT
);

CREATE INDEX scheduler_decisions_contact ON scheduler_decisions (contact_id, at);
