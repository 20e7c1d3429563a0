"""The measurement steps of `make bench`, one module per measured job.

Each module's run functions take the run's benchlib.Ctx, start what they
need through ctx.procs, and record their figures under their own key of
ctx.r (results.json). measure.py holds the table of steps and their order.
"""
