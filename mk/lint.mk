# Checked code (STYLE habit 16): ruff and mypy, configured in pyproject.toml.
# Included by the Makefile; `make test` runs it before pytest.

.PHONY: lint

lint: install ## ruff (lint + format check) and mypy over the tree
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
