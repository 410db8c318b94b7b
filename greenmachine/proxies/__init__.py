"""Proxies: the GP language, the classic trees, the hand-designed baselines, proxy files and scoring."""
