"""Storage: the lakehouse, the one place that reads and writes Delta tables.

:class:`Lakehouse` (in :mod:`.lakehouse`) is the facade; the modules beside it hold its
parts: :mod:`.options`, :mod:`.delta_log`, :mod:`.reader`, :mod:`.writer`,
:mod:`.file_stats`, :mod:`.commit`, :mod:`.delta_spark`, :mod:`.sql` and :mod:`.errors`.
"""

from regrow.storage.lakehouse import CommitInfo as CommitInfo
from regrow.storage.lakehouse import Lakehouse as Lakehouse
from regrow.storage.lakehouse import LakehouseError as LakehouseError
from regrow.storage.lakehouse import MissingPartitionError as MissingPartitionError
from regrow.storage.lakehouse import SchemaChangeError as SchemaChangeError
from regrow.storage.lakehouse import TableInfo as TableInfo
from regrow.storage.lakehouse import TableNotFoundError as TableNotFoundError
from regrow.storage.lakehouse import decode_dictionaries as decode_dictionaries
from regrow.storage.session import default_parallelism as default_parallelism
from regrow.storage.session import is_connect as is_connect
