"""Channel adapters: they verify and parse what arrives, and send what leaves."""
