-- Connect sessions get an observable outcome (GET /v1/connect-sessions/{id}) and a place to send
-- the end user back to; tenants get the branding their hosted connect page shows.
-- The session state machine lives in src/connections/connect/sessions.ts alone:
--   pending -> completed (connection_id set) | failed (failure_reason set); `expired` is derived
--   (pending and expires_at passed), never stored, so no job has to sweep it.
ALTER TABLE connect_sessions ADD COLUMN status text NOT NULL DEFAULT 'pending'
  CHECK (status IN ('pending', 'completed', 'failed'));
ALTER TABLE connect_sessions ADD COLUMN failure_reason text;
ALTER TABLE connect_sessions ADD COLUMN failure_detail text;
ALTER TABLE connect_sessions ADD COLUMN return_url text;
ALTER TABLE connect_sessions ADD COLUMN finished_at timestamptz;
-- Sessions completed before this migration carry their connection already.
UPDATE connect_sessions SET status = 'completed', finished_at = used_at WHERE connection_id IS NOT NULL AND used_at IS NOT NULL;
ALTER TABLE connect_sessions ADD CONSTRAINT connect_sessions_outcome CHECK (
  (status = 'pending' AND failure_reason IS NULL)
  OR (status = 'completed' AND connection_id IS NOT NULL AND failure_reason IS NULL)
  OR (status = 'failed' AND failure_reason IS NOT NULL)
);

-- { displayName?, logoUrl?, accentColor? }, validated by src/tenancy/branding.ts; NULL: Bulkhead's own look.
ALTER TABLE tenants ADD COLUMN branding jsonb;
