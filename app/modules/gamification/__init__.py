"""Points, levels and achievements: the points ledger with daily caps per source, the
level ladder and achievement catalogue (admin-editable), unlocking, and the
leaderboard."""
