"""Money in and out: transactions in categories (the defaults plus the business's own),
filtered lists, period summaries in the business's time zone and the streamed CSV export.
Recording money earns points through the gamification service."""
