"""Who the caller is: login with throttling per account and address, HS256 access and
refresh tokens (refresh tokens rotate; a replayed one ends its whole family), the refresh
cookie of the web client, and the changes that need the current password (password,
email), which end the other sessions. The accounts themselves are the users package's."""
