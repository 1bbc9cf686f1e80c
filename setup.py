"""Packaging for calicoctl and its node agent."""
from setuptools import find_packages, setup

setup(
    name="calicoctl",
    version="0.6.0",
    description="Calico container networking for Docker hosts: calicoctl and its node agent",
    packages=find_packages(include=["calicoctl", "calicoctl.*"]),
    python_requires=">=3.9",
    install_requires=[
        "docopt-ng==0.9.0",
        "docker==7.1.0",
        "pyroute2==0.9.7",
        "netaddr==1.3.0",
    ],
    entry_points={
        "console_scripts": [
            "calicoctl = calicoctl.__main__:main",
            "calico-agent = calicoctl.agent.__main__:main",
        ],
    },
)
