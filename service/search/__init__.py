"""The search core: the engine that joins encoder, index and scoring; the lexical leg; the cache; loading."""
