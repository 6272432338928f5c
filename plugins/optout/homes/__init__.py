"""Where an extract lives: files, pandas frames, or tables in a database, one home each.

Importing this package stays light (nothing but the standard library): the spec names a file's
format through :mod:`optout.homes.files.formats` without loading Arrow.
"""
