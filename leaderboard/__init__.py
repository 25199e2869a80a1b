"""The local leaderboard: its SQLite store and its views."""
