"""The knowledge base inside the hub: search and article APIs, the help portal, helpfulness votes, and phrasing suggestions an admin accepts."""
