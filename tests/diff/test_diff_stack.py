"""Differential tests (pysev vs unicorn), group "stack": see forms.py for the forms."""
import pytest

from diffharness import check_form
from forms import forms_in


@pytest.mark.parametrize("form", forms_in("stack"), ids=lambda f: f.id)
def test_stack(form):
    check_form(form)
