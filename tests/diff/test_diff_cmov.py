"""Differential tests (pysev vs unicorn), group "cmov": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("cmov"), ids=lambda f: f.id)
def test_cmov(form):
    check_form(form)
