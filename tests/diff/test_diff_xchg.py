"""Differential tests (pysev vs unicorn), group "xchg": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("xchg"), ids=lambda f: f.id)
def test_xchg(form):
    check_form(form)
