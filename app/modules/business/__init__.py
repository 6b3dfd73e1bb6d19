"""The owner's business profile (one per user): name, category, stage, address, time
zone and the advisor's memory (`ai_context`). Creating one requests the first roadmap;
its level and points are the gamification package's to change."""
