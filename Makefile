# Developer entry points for keyward. `make help` lists them.
#
# When DATABASE_URL is not set, `run` and `test` start the local dev cluster
# (scripts/dev-db.sh, data in .data/) and use its URL.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo
DEV_DB := scripts/dev-db.sh

# Cargo profile for `make run`: release (default) or debug/dev, or any custom
# profile name. e.g. `make run PROFILE=debug` skips the slower release build.
PROFILE ?= release
ifeq ($(PROFILE),release)
  PROFILE_FLAG := --release
else ifneq ($(filter $(PROFILE),debug dev),)
  PROFILE_FLAG :=
else
  PROFILE_FLAG := --profile $(PROFILE)
endif

# Extra arguments for the test runner, e.g. `make test TEST_ARGS=tenants`.
TEST_ARGS ?=

# Shell snippet: use the dev cluster unless DATABASE_URL is already set.
USE_DEV_DB = if [ -z "$${DATABASE_URL:-}" ]; then \
	  $(DEV_DB) start; \
	  DATABASE_URL="$$($(DEV_DB) url)"; \
	  export DATABASE_URL; \
	fi

# Filter: a database URL with its password (if any) shown as ***, for what `run` prints.
HIDE_PASSWORD = sed -E 's\#(://[^:/@]*):[^@/]*@\#\1:***@\#'

# Shell snippet for serving: with the dev cluster, migrate as its owner role and serve as the
# role that may only read and append to the audit trail (the two-role setup, docs/audit.md).
USE_DEV_DB_ROLES = if [ -z "$${DATABASE_URL:-}" ]; then \
	  $(DEV_DB) start; \
	  DATABASE_URL="$$($(DEV_DB) server-url)"; \
	  KEYWARD_MIGRATION_DATABASE_URL="$$($(DEV_DB) url)"; \
	  export DATABASE_URL KEYWARD_MIGRATION_DATABASE_URL; \
	fi

# Shell snippet: without a configured access-token key, use a development secret kept in .data/.
USE_DEV_JWT = if [ -z "$${KEYWARD_JWT_SECRET:-}" ] && [ -z "$${KEYWARD_JWT_PRIVATE_KEY_FILE:-}" ]; then \
	  mkdir -p .data; \
	  if [ ! -s .data/jwt-secret ]; then \
	    (umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n' > .data/jwt-secret); \
	    echo "==> generated a development access-token secret in .data/jwt-secret"; \
	  fi; \
	  KEYWARD_JWT_SECRET="$$(cat .data/jwt-secret)"; \
	  export KEYWARD_JWT_SECRET; \
	fi

# Shell snippet: without master keys, use a development master key kept in .data/.
USE_DEV_MASTER_KEY = if [ -z "$${KEYWARD_MASTER_KEYS:-}" ]; then \
	  mkdir -p .data; \
	  if [ ! -s .data/master-keys ]; then \
	    (umask 077; printf 'v1:%s' "$$(head -c 32 /dev/urandom | base64 | tr -d '\n')" > .data/master-keys); \
	    echo "==> generated a development master key for signing secrets in .data/master-keys"; \
	  fi; \
	  KEYWARD_MASTER_KEYS="$$(cat .data/master-keys)"; \
	  export KEYWARD_MASTER_KEYS; \
	  echo "==> using the development master key in .data/master-keys (set KEYWARD_MASTER_KEYS in production)"; \
	fi

# Shell snippet: without an audit key, use a development one kept in .data/ (signs checkpoints).
USE_DEV_AUDIT_KEY = if [ -z "$${KEYWARD_AUDIT_SIGNING_KEY_FILE:-}" ]; then \
	  mkdir -p .data; \
	  if [ ! -s .data/audit-signing-key.pem ]; then \
	    $(CARGO) run --quiet $(PROFILE_FLAG) -- audit keygen --out .data/audit-signing-key.pem || exit 1; \
	  fi; \
	  KEYWARD_AUDIT_SIGNING_KEY_FILE=.data/audit-signing-key.pem; \
	  export KEYWARD_AUDIT_SIGNING_KEY_FILE; \
	  echo "==> using the development audit key in .data/audit-signing-key.pem (set KEYWARD_AUDIT_SIGNING_KEY_FILE in production)"; \
	fi

.PHONY: help run test bench db-stop fmt lint openapi

help:
	@echo "make run      start the dev database if needed, then serve (PROFILE=$(PROFILE))"
	@echo "make test     start the dev database if needed, then run the tests"
	@echo "make bench    verify throughput as ratios to /healthz and SELECT 1 (release build)"
	@echo "make db-stop  stop the dev database (data kept in .data/)"
	@echo "make fmt      format the code"
	@echo "make lint     rustfmt check + clippy with warnings as errors + rust-version check"
	@echo "make openapi  regenerate openapi/openapi.json"

run:
	@$(USE_DEV_DB_ROLES); \
	$(USE_DEV_JWT); \
	$(USE_DEV_MASTER_KEY); \
	$(USE_DEV_AUDIT_KEY); \
	shown_db="$$(printf '%s' "$$DATABASE_URL" | $(HIDE_PASSWORD))"; \
	shown_owner="$$(printf '%s' "$${KEYWARD_MIGRATION_DATABASE_URL:-}" | $(HIDE_PASSWORD))"; \
	echo "==> DATABASE_URL=$$shown_db KEYWARD_MIGRATION_DATABASE_URL=$${shown_owner:-(unset: one role)}"; \
	echo "==> first admin token (in another terminal, once the server has applied the migrations):"; \
	echo "    DATABASE_URL=$$shown_db KEYWARD_MIGRATION_DATABASE_URL=$$shown_owner $(CARGO) run $(PROFILE_FLAG) -- admin create-service-token --platform --name bootstrap --permissions tenants:admin,keys:read,keys:write,keys:verify,audit:read"; \
	echo "==> or a platform admin user (password on stdin):"; \
	echo "    DATABASE_URL=$$shown_db KEYWARD_MIGRATION_DATABASE_URL=$$shown_owner $(CARGO) run $(PROFILE_FLAG) -- admin create-user --email you@example.com --platform-admin"; \
	exec $(CARGO) run $(PROFILE_FLAG) -- serve

# #[sqlx::test] creates a database per test, so DATABASE_URL must name a role
# allowed to CREATE DATABASE (the dev cluster's "keyward" superuser is).
test:
	@$(USE_DEV_DB); \
	echo "==> DATABASE_URL=$$DATABASE_URL"; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run $(TEST_ARGS); rc=$$?; \
	else \
	  $(CARGO) test $(TEST_ARGS); rc=$$?; \
	fi; \
	if [ ! -d ../shared/testdata ]; then \
	  echo "==> NOTE: ../shared/testdata is absent: the signing tests against published test data"; \
	  echo "    (AWS SigV4 and SigV2 suites, RFC 9421/9530 examples) passed without checking anything."; \
	  echo "    Under CI=true they fail instead."; \
	fi; \
	exit $$rc

# keyward against references measured in the same run (/healthz, SELECT 1, pgbench -S and -N):
# ratios, latencies and resident memory per cached key, on fresh scratch databases that are
# dropped afterwards (a million keys are seeded). Release build, about three minutes; needs
# pgbench (PGBENCH, the PATH or /usr/lib/postgresql/*/bin). Not part of CI.
bench:
	@$(USE_DEV_DB); \
	exec $(CARGO) bench --bench verify

db-stop:
	@$(DEV_DB) stop

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 scripts/check-rust-version.py

openapi:
	@mkdir -p openapi
	$(CARGO) run --quiet -- openapi > openapi/openapi.json.tmp || { rm -f openapi/openapi.json.tmp; exit 1; }
	mv openapi/openapi.json.tmp openapi/openapi.json
	@echo "wrote openapi/openapi.json"
