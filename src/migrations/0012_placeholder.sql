-- Placeholder for the reserved migration 0012 (another branch owns it), so 0013 is in sequence on
-- this branch. The integrator drops this file when the real 0012 lands.
SELECT 1;
