"""The hub's side of the bot: bot jobs between customers and Rasa, the hub's triage of a message, keeping the model in step with the knowledge base, and the child processes the hub supervises."""
