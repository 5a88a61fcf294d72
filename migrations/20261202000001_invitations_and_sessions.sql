-- Invitations remember the address they were sent to (shown to inviters instead of the account's
-- own spelling), can be voided (cancelled by an inviter, replaced by a newer invitation, or
-- overtaken by a role change or removal of the member) and give up after repeated failed accepts.
ALTER TABLE invites
    ADD COLUMN email text,
    ADD COLUMN voided_at timestamptz,
    ADD COLUMN voided_reason text
        CHECK (voided_reason IN ('cancelled', 'replaced', 'member_changed', 'too_many_failures')),
    ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT invites_voided_pair CHECK ((voided_at IS NULL) = (voided_reason IS NULL));
UPDATE invites i SET email = u.email FROM users u WHERE u.id = i.user_id;
ALTER TABLE invites ALTER COLUMN email SET NOT NULL;

-- Invitations left pending by earlier releases: one to a person who is already a member could make
-- them owner again after a removal, and several to one person could each be accepted in turn.
UPDATE invites i SET voided_at = now(), voided_reason = 'member_changed'
 WHERE accepted_at IS NULL
   AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = i.user_id AND m.tenant_id = i.tenant_id);
UPDATE invites SET voided_at = now(), voided_reason = 'replaced'
 WHERE accepted_at IS NULL AND voided_at IS NULL
   AND id NOT IN (SELECT DISTINCT ON (tenant_id, user_id) id FROM invites
                   WHERE accepted_at IS NULL AND voided_at IS NULL
                   ORDER BY tenant_id, user_id, created_at DESC, id DESC);

CREATE INDEX invites_pending ON invites (tenant_id, id) WHERE accepted_at IS NULL AND voided_at IS NULL;
-- At most one pending invitation per person and tenant: a new one replaces the old.
CREATE UNIQUE INDEX invites_one_pending ON invites (tenant_id, user_id) WHERE accepted_at IS NULL AND voided_at IS NULL;

-- Login failures are pruned by age.
CREATE INDEX login_failures_occurred ON login_failures (occurred_at);
