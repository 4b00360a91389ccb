"""The agents' desk in Slack: ticket cards (Block Kit), inbound events and commands, thread mirroring, and the durable Slack jobs that carry them."""
