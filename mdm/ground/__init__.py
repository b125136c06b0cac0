"""The ground: models, database, settings, audit chain, clock, secrets, the built-in CA, push transport."""
