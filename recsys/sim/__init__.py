"""The feedback-loop simulator: simulated people who answer 👍/👎 from their held-out ratings.

- ``split``: the rating-aware split (per user, the chronologically last 20% of ratings, at least 5, are
  that person's future opinions; the rest is history).
- ``person``: a simulated person (start state, answers) as pure functions.
- ``metrics``: per-round list metrics and confidence intervals, pure.
- ``session``: the loop that shows lists through ``Recommender.recommend`` and feeds the answers back,
  plus the non-LLM parts a condition needs (popularity retriever, embedding negative baseline).

The command that runs every condition and writes the tables is ``python -m recsys.simulate``.
Not for: leave-one-out benchmarks (evaluate.py, rerank_eval.py).
"""
