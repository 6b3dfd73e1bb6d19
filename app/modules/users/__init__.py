"""Accounts: registration, names, roles, activation, and the admin's user list and edits.
Ending an account's sessions at once (`tokens_valid_after`) is recorded here; the tokens
are the auth package's."""
