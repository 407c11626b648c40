"""Differential tests (pysev vs unicorn), group "alu": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("alu"), ids=lambda f: f.id)
def test_alu(form):
    check_form(form)
