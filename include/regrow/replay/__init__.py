"""Replay history under retraining policies: the continual-learning scoreboard.

The data stages run once for the range (:mod:`regrow.data.backfill`); then every policy
replays the days through the library's scoring, monitoring, policy, training and gate
functions (:mod:`regrow.replay.engine`), seeing only the labels matured by each day
(:mod:`regrow.replay.history`); :mod:`regrow.replay.scoreboard` compares quality with
training compute, and :mod:`regrow.replay.run` ties it together for ``regrow replay``.
"""
