"""Differential tests (pysev vs unicorn), group "muldiv": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("muldiv"), ids=lambda f: f.id)
def test_muldiv(form):
    check_form(form)
