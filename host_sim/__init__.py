"""The central host: signed HTTP API, accounts and ledger, blacklist, bill upload, clearing."""
