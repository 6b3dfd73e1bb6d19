"""The roadmap: milestones and their tasks, their progress and rewards, and AI roadmap
generation — requests recorded in the database and run once each by the roadmap worker
(`worker`), which drafts them with the model (`generation`)."""
