"""The bot: a Rasa 3.6 assistant that answers from the knowledge base and hands off to people.

- ``bot/rasa/``: the Rasa project (config, domain, training data, endpoints,
  credentials) and ``bot.rasa.model`` which trains it only when it changed.
  Rasa itself runs from its own Python 3.10 venv (``.venv-rasa``, see
  ``mk/rasa.mk``) because rasa 3.6 does not install on 3.11.
- ``bot/actions/``: the rasa_sdk action server, run in the hub's environment
  (``python -m rasa_sdk --actions bot.actions``).
"""
