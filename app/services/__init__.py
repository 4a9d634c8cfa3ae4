"""Business rules and the errors they raise, the CSV reader, uploads' chunks, and
retention. Services own the transaction and commit before any work is scheduled
(contract rule 1).

Every service function takes the session first, then keyword-only arguments in
one order: the ids it is about, the payload, the settings, the Idempotency-Key.
"""
