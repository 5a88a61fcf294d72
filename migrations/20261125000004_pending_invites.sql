-- An invitation carries the role it offers; the membership is created only when the invited
-- person accepts (setting their password, or proving it if their account already has one).
ALTER TABLE invites
    ADD COLUMN role text NOT NULL DEFAULT 'developer' CHECK (role IN ('owner', 'admin', 'developer', 'auditor'));
ALTER TABLE invites ALTER COLUMN role DROP DEFAULT;
