"""`python -m ovnvnet`: run the operator cluster-wide."""
import kopf

import ovnvnet.main  # noqa: F401 - registers the handlers


def run() -> None:
    kopf.configure(verbose=False)
    kopf.run(clusterwide=True, standalone=True)


if __name__ == "__main__":
    run()
