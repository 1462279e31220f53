-- Alerts on a metric crossing a threshold (issue 4: the secondary site's replay lag), besides failed
-- checks and runs. The inline CHECK of 002 has PostgreSQL's default name alerts_kind_check.
ALTER TABLE vault_secure.alerts DROP CONSTRAINT IF EXISTS alerts_kind_check;
ALTER TABLE vault_secure.alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN ('check', 'run', 'lag'));
