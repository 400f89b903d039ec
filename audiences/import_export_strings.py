"""The strings django-import-export shows on the recipients' import and export pages.

The package has no Traditional Chinese catalogue. Listed here (never called) so `make messages`
keeps them in ours, which Django consults for every gettext call, the package's included.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop

IMPORT_EXPORT_STRINGS = (
    gettext_noop(
        "Below is a preview of data to be imported. If you are satisfied with the results, "
        "click 'Confirm import'"
    ),
    gettext_noop("Confirm import"),
    gettext_noop("Delete"),
    gettext_noop("Export"),
    gettext_noop("Export selected %(verbose_name_plural)s"),
    gettext_noop("File to import"),
    gettext_noop("Format"),
    gettext_noop("Import"),
    gettext_noop("Line number"),
    gettext_noop("New"),
    gettext_noop("Non field specific"),
    gettext_noop(
        "Please correct these errors in your data where possible, then reupload it using the "
        "form above."
    ),
    gettext_noop("Preview"),
    gettext_noop("Resource"),
    gettext_noop("Row"),
    gettext_noop("Select all"),
    gettext_noop("Skipped"),
    gettext_noop("Submit"),
    gettext_noop("This exporter will export the following fields: "),
    gettext_noop("This importer will import the following fields: "),
    gettext_noop("Update"),
)
