"""Phishing scores for DNS names seen in Certificate Transparency.

    from ctlib.downstream.score import Scorer
    s = Scorer().score("paypal.com.secure-login.xyz", issuer="Let's Encrypt")
    s.score, s.alert, s.rules, s.registered_domain, s.brand

`Scorer` (rules.py) applies the rules; `ScoringLists`/`load_lists` (lists.py) read the
editable lists of `include/scoring/`. `python -m ctlib.score NAME...` scores from the shell.
"""

from ctlib.downstream.score.lists import DEFAULT_FOLDER, Brand, ScoringListError, ScoringLists, load_lists
from ctlib.downstream.score.rules import Score, Scorer

__all__ = ["DEFAULT_FOLDER", "Brand", "Score", "Scorer", "ScoringListError", "ScoringLists", "load_lists"]
