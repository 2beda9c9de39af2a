"""Generation through any OpenAI-compatible endpoint: the client, its cache, budget and prompts."""
