"""The self-service help portal (server-rendered, works without JavaScript)."""

from knowledge_base.portal.app import create_portal_app
from knowledge_base.portal.votes import InMemoryVoteStore, VoteStore

__all__ = ["InMemoryVoteStore", "VoteStore", "create_portal_app"]
