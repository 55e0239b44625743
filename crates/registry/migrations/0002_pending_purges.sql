-- Schema version 2: purges on uninstall.
--
-- An uninstall with purge removes the install here and the install's data
-- in the runner's KV store, another database: no transaction spans both.
-- The uninstall writes this row in its own transaction; the purge of the KV
-- data removes it once that store confirms. While it is here the tenant
-- cannot install the extension again (a late purge would remove the new
-- install's data), and `DELETE …?purge=true` finishes it.
CREATE TABLE pending_purges (
    tenant TEXT NOT NULL,
    extension TEXT NOT NULL,
    install_id TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (tenant, extension)
);
