"""Differential tests (pysev vs unicorn), group "mov": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("mov"), ids=lambda f: f.id)
def test_mov(form):
    check_form(form)
