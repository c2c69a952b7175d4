"""Summaries, leaderboards, HTML reports and reproduction of winners."""
