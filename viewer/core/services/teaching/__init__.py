"""Teaching files: authoring cases while reading, de-identified export and import, quizzes.

``deid`` (PS3.15 Annex E basic profile), ``pixels`` (burned-in text: which objects are held
back, masks), ``export`` and ``importer`` (the exchange format), ``authoring`` (a case from the
study being read), ``quiz`` (a collection as unknowns).
"""
