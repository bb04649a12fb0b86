-- A signing key's lifecycle, as keys-core's SigningKeyLifecycle states it:
-- an active key has no roll data; a rolled key always has its roll time and
-- an expiry that is not before it. Backs WorkspaceSigningKey::try_from, so
-- no writer (another keysd version, hand-written SQL) can store what no
-- transition makes.
ALTER TABLE workspace_signing_keys ADD CONSTRAINT workspace_signing_keys_lifecycle CHECK (
    (status = 'active' AND rolled_at IS NULL AND expiry_at IS NULL)
    OR (status = 'rolled' AND rolled_at IS NOT NULL AND expiry_at IS NOT NULL AND expiry_at >= rolled_at)
);
