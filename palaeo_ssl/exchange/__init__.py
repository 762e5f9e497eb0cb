"""Labels and predictions in and out of EcoTaxa, Darwin Core Archives and plain CSV, round-tripped.

Out (``palaeo-ssl export``)::

    from palaeo_ssl.exchange import read_source, write_identifications
    ids = read_source("results/new")                        # classify's predictions (or suggest's, or any DATA)
    write_identifications(ids, "to_ecotaxa", "ecotaxa")      # ecotaxa_<name>.tsv + images/, ready to zip
    write_identifications(ids, "to_gbif", "dwca")            # <name>_dwca.zip (occurrences + multimedia)
    write_identifications(ids, "tables", "csv")              # <name>_identifications.csv

In: an EcoTaxa TSV, a Darwin Core Archive (``.zip`` or folder) or such a CSV is DATA to every command
(:func:`palaeo_ssl.images.discover`): a person's identifications become labels, the machine's only with
``accept_predicted``; labels are added to the dataset the file came from, never over its own.

:class:`~palaeo_ssl.exchange.model.Identifications` is the shared model; each format has its module
(:mod:`.ecotaxa`, :mod:`.dwca`, :mod:`.table`), each saying which documentation it follows.
"""

from .dwca import read_dwca, write_dwca
from .ecotaxa import read_ecotaxa, write_ecotaxa
from .merge import ImportResult, exchange_format, import_identifications, read_data, read_exchange
from .model import HUMAN, MACHINE, NONE, Identifications, check_names
from .run import FORMATS, run_export, write_identifications
from .sources import from_images, read_predictions, read_source
from .table import read_table, write_table

__all__ = ["FORMATS", "HUMAN", "MACHINE", "NONE", "Identifications", "ImportResult", "check_names",
           "exchange_format", "from_images", "import_identifications", "read_data", "read_dwca", "read_ecotaxa",
           "read_exchange", "read_predictions", "read_source", "read_table", "run_export", "write_dwca",
           "write_ecotaxa", "write_identifications", "write_table"]
