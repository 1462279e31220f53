"""Getting a document back from the cold site and proving it: plain Python, no Dagster.

    cold.py         the cold-site calls both need: x-amz-restore, RestoreObject of an exact version,
                    a streamed read that hashes as it goes
    resolve.py      which version to restore and what its bytes must hash to (tracking DB + journal)
    restore.py      the operator's restore of one version: request, wait, read, verify, place the file
    errors.py       why a restore did not happen (could not, refused, still restoring)
    drill_store.py  the restore drill's records (vault_secure.restore_drills) and settings
    drills.py       the restore drill: sample, restore, read back, re-hash (two phases, durable)

The command is cli/restore.py; the drill's Dagster layer is jobs/, sensors/ and resources/restore_drill.py.
"""
