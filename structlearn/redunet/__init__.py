"""ReduNet (Chan et al., JMLR 2022): layers constructed from the data by rate reduction; with
shift invariance, multi-channel circular convolutions computed per frequency.

- :mod:`~structlearn.redunet.ops`: the operators, one layer's step and the rates (pure);
- :mod:`~structlearn.redunet.network`: :class:`ReduLayer`, :class:`Lift`, :class:`ReduNet`;
- :mod:`~structlearn.redunet.conv`: a constructed shift-invariant layer as circular convolutions.
"""
from structlearn.redunet.network import Lift, ReduLayer, ReduNet

__all__ = ["Lift", "ReduLayer", "ReduNet"]
