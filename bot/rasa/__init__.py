"""The Rasa project directory, plus the helpers that build and start it.

The files Rasa reads are beside this module: ``config.yml``, ``domain.yml``,
``data/`` (training data), ``endpoints.yml`` and ``credentials.yml``.
``bot.rasa.model`` trains a model only when those change;
``bot.rasa.launch`` starts ``rasa run`` and the action server as child
processes.
"""
