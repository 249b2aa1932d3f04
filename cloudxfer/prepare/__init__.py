"""``cloudxfer prepare``: the official downloads -> a checked data-set file, once.

``prepare sen12ms`` reads the SEN12MS season folders with the toolbox's label pickle and split
lists, ``prepare pairs`` a user's real cloudy pairs, ``prepare source`` a source image folder;
``cloudxfer stats`` recomputes a data file's standardisation. Every later command reads the
data file these write (docs/real_data.md).
"""
