"""Extracts kept as tables in a database, filtered there: only counts cross into Python.

:mod:`engine` is the entry point (filter, measure, hash); :mod:`run` the passes of one run;
:mod:`staging` the check result loaded into scratch tables; :mod:`expressions` the NHS number
classification in SQL; :mod:`content_hash` the order-independent table hash. What differs between
databases is one :class:`~optout.homes.sql.dialect.Dialect` per database, chosen once per engine by
:func:`~optout.homes.sql.dialects.dialect_for` (:mod:`postgres`, :mod:`sqlite`).
"""
